"""An experiment, not part of the gateway: steers the gateway's new connections over its proxy
services by the client's TCP source port instead of the kernel's hash (issue 24, session 27).

    python3 scripts/bench/reuseport_cbpf.py GATEWAY_PID PORT SERVICES

It copies one of the gateway's listening sockets on 127.0.0.1:PORT out of the running process
(pidfd_getfd, Linux 5.6+, root or the same user with ptrace rights) and attaches to its
SO_REUSEPORT group a classic BPF program that picks socket ((source port >> 1) % SERVICES):
a client's consecutive connections (Linux gives a destination's connects consecutive even
ports) then alternate between the services, where the hash split 64 of them 50/50 to 62/38.
IPv4 listeners only (the TCP header read at 20 bytes past the IP header's start).
"""
import ctypes
import os
import socket
import struct
import sys

pid, port, services = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)

listening = set()
for line in open("/proc/net/tcp").readlines()[1:]:
    fields = line.split()
    if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
        listening.add(fields[9])
target = None
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if link.startswith("socket:[") and link[8:-1] in listening:
        target = int(fd)
        break
if target is None:
    sys.exit(f"no socket of pid {pid} listens on port {port}")

SYS_PIDFD_GETFD = 438
own = libc.syscall(SYS_PIDFD_GETFD, os.pidfd_open(pid), target, 0)
if own < 0:
    sys.exit(f"pidfd_getfd: errno {ctypes.get_errno()}")

SKF_NET_OFF = -0x100000
LD_H_ABS, ALU_RSH_K, ALU_MOD_K, RET_A = 0x28, 0x74, 0x94, 0x16
program = [
    (LD_H_ABS, 0, 0, (SKF_NET_OFF + 20) & 0xFFFFFFFF),  # the TCP source port
    (ALU_RSH_K, 0, 0, 1),
    (ALU_MOD_K, 0, 0, services),
    (RET_A, 0, 0, 0),
]
code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
fprog = struct.pack("HL", len(program), ctypes.addressof(code))
SO_ATTACH_REUSEPORT_CBPF = 51
sock = socket.socket(fileno=own)
sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
sock.detach()
print(f"attached to the group of fd {target} of pid {pid}: socket = (source port >> 1) % {services}")
