//! Rewrites the committed copies of the API description (`docs/openapi.json` and
//! `docs/openapi.yaml`) from the code: `cargo run -p api-doc`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::write(docs.join("openapi.json"), api_doc::to_json())?;
    std::fs::write(docs.join("openapi.yaml"), api_doc::to_yaml())?;
    println!("wrote docs/openapi.json and docs/openapi.yaml");
    Ok(())
}
