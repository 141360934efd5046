"""The lab PC's own OS for the smoke lab's night scenario: a 512-byte MBR boot sector that
prints a marker on the serial port (COM1, 0x3f8) and halts. When serve answers "local disk"
after the night, a VM that boots this from its virtual disk proves it left the cluster for
its day OS; the disk's hash before and after proves nobody wrote it."""

from __future__ import annotations

DAY_OS_MARKER = "DAY-OS-OK"
LOAD_ADDRESS = 0x7C00  # where the BIOS loads the boot sector


def boot_sector(marker: str = DAY_OS_MARKER) -> bytes:
    """16-bit real-mode code: print marker + CRLF to COM1, then hlt forever; 55 AA at 510."""
    code = bytearray()
    code += b"\xfa"  # cli
    code += b"\xfc"  # cld: lodsb walks forward
    code += b"\x31\xc0"  # xor ax, ax
    code += b"\x8e\xd8"  # mov ds, ax
    si_at = len(code) + 1
    code += b"\xbe\x00\x00"  # mov si, msg (patched below)
    code += b"\xba\xf8\x03"  # mov dx, 0x3f8
    loop = len(code)
    code += b"\xac"  # lodsb
    code += b"\x84\xc0"  # test al, al
    code += b"\x74\x03"  # jz done (over out + jmp)
    code += b"\xee"  # out dx, al
    code += bytes([0xEB, (loop - (len(code) + 2)) & 0xFF])  # jmp loop
    done = len(code)
    code += b"\xf4"  # hlt
    code += bytes([0xEB, (done - (len(code) + 2)) & 0xFF])  # jmp done
    msg = LOAD_ADDRESS + len(code)
    code[si_at : si_at + 2] = msg.to_bytes(2, "little")
    code += marker.encode("ascii") + b"\r\n\0"
    if len(code) > 446:  # the partition table starts at 446
        raise ValueError("marker too long for a boot sector")
    return bytes(code) + b"\0" * (510 - len(code)) + b"\x55\xaa"
