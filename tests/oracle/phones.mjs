// The reference's phone rules (api/src/pdc/providers/validator/lib/phone.ts), run with the
// library and metadata it uses: libphonenumber-js 1.12.8 and its default "min" metadata.
//
//   node phones.mjs          reads one JSON string per line on stdin; writes one JSON line per
//                            input: {"code": <calling code read, or null>, "e164": <E.164 when
//                            valid as a phone, else null>, "trunc_e164": <the same as a
//                            phone_trunc>}
//   node phones.mjs plans    writes the numbering plans of the metadata, by country:
//                            {"FR": {"code", "general", "leading", "types"}, ...}
import { isValidPhoneNumber, parsePhoneNumber } from "libphonenumber-js";
import metadata from "libphonenumber-js/min/metadata";
import { createInterface } from "node:readline";

const parse = (input) => {
  try {
    return parsePhoneNumber(input, { defaultCountry: "FR", extract: false }) ?? null;
  } catch {
    return null;
  }
};

if (process.argv[2] === "plans") {
  const plans = {};
  for (const [id, c] of Object.entries(metadata.countries)) {
    const types = Array.isArray(c[11]) ? c[11].map((t) => (t ? t[0] : null)) : null;
    plans[id] = { code: c[0], general: c[2], leading: c[10] || null, types };
  }
  process.stdout.write(JSON.stringify(plans) + "\n");
} else {
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line) continue;
    const input = JSON.parse(line);
    // formatPhone and formatPhoneTrunc of the reference's lib/phone.ts.
    const phone = isValidPhoneNumber(input, "FR");
    const trunc = isValidPhoneNumber(`${input}00`, "FR");
    const full = trunc ? parse(`${input}00`)?.format("E.164") : null;
    process.stdout.write(
      JSON.stringify({
        code: parse(input)?.countryCallingCode ?? null,
        e164: phone ? parse(input).format("E.164") : null,
        trunc_e164: full ? full.slice(0, -2) : null,
      }) + "\n",
    );
  }
}
