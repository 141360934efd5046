"""Users of the cluster: OpenSSH public keys checked, the passwd-style users file read."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import struct
from pathlib import Path

from ..errors import Problem
from ..loader import read_bounded
from .model import HeadModel, User

# Key types the head's sshd accepts (OpenSSH 9.2); DSA is gone from OpenSSH.
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
)
# Accounts the image has already (Debian's base, munge, slurm, nfs, sshd): a user of chaos.yaml
# must not shadow them.
SYSTEM_NAMES = frozenset(
    (
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "_apt",
        "nobody",
        "systemd-network",
        "systemd-timesync",
        "messagebus",
        "munge",
        "slurm",
        "sshd",
        "statd",
        "_rpc",
        "tss",
    )
)
FIRST_UID = 1000
_USER_LINE = re.compile(r"^([a-z_][a-z0-9_-]{0,31}):([0-9]{1,5}):([0-9]{1,5}):(.+)$")


def key_problem(text: str) -> str | None:
    """Why `text` is not one OpenSSH public key line, or None when it is one."""
    if "PRIVATE KEY" in text:
        return (
            "this is a private key; give the public key (the .pub file's line) and keep "
            "the private key where it is"
        )
    parts = text.split()
    if len(parts) < 2:
        return "not an OpenSSH public key: write it as 'ssh-ed25519 AAAA... comment'"
    kind, blob = parts[0], parts[1]
    if kind not in KEY_TYPES:
        return f"key type {kind!r} is not one of {', '.join(KEY_TYPES)}"
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        inner = raw[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        return "the key's base64 part is damaged; paste the whole line of the .pub file"
    if inner != kind:
        return f"the key says {kind} but its data is a {inner} key; paste the line unchanged"
    if kind == "ssh-rsa" and len(raw) < 256 + 20:
        return "an RSA key shorter than 2048 bits; use ssh-ed25519"
    return None


def read_users_file(path: Path) -> tuple[tuple[User, ...], list[Problem]]:
    """Lines name:uid:gid:key (one key per line; a name repeats for more keys; # comments).
    Field checks (reserved uid, bad key, duplicates) are the cross-checks' work."""
    problems: list[Problem] = []
    order: list[str] = []
    found: dict[str, tuple[int, int, list[str], int]] = {}
    try:
        text = read_bounded(path)
    except Exception as exc:  # ConfigError carries its own problem
        return (), list(getattr(exc, "problems", [Problem(str(path), None, "", str(exc))]))
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _USER_LINE.match(line)
        if m is None:
            problems.append(
                Problem(
                    str(path),
                    number,
                    "",
                    "not a user line; write name:uid:gid:ssh-ed25519 AAAA... comment",
                )
            )
            continue
        name, uid, gid, key = m[1], int(m[2]), int(m[3]), m[4].strip()
        why = key_problem(key)
        if why:
            problems.append(Problem(str(path), number, name, why))
        if name in found:
            first_uid, first_gid, keys, first_line = found[name]
            if (first_uid, first_gid) != (uid, gid):
                problems.append(
                    Problem(
                        str(path),
                        number,
                        "",
                        f"{name} has uid:gid "
                        f"{first_uid}:{first_gid} at line {first_line}; a "
                        "repeated name only adds a key",
                    )
                )
            keys.append(key)
        else:
            found[name] = (uid, gid, [key], number)
            order.append(name)
    users = tuple(
        User(name=n, uid=found[n][0], gid=found[n][1], ssh_keys=tuple(found[n][2])) for n in order
    )
    return users, problems


def with_users_file(section: HeadModel, base: Path) -> tuple[HeadModel, list[Problem]]:
    """The head's section with the users file's users after chaos.yaml's own (the head
    feature's Feature.finish); the file's problems carry its own file:line."""
    if not section.users_file:
        return section, []
    file_users, problems = read_users_file(base / section.users_file)
    if problems:
        return section, problems
    return dataclasses.replace(section, users=(*section.users, *file_users)), []
