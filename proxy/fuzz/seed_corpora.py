#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (corpus/<target>/) from the RIV-TA sample
messages in ../../../shared/samples (or the directory given as the first argument).

Files 01-05 there are requests, 06-15 responses (09 and 15 SOAP faults); see its README.
Each target's seeds carry the target's input header (see the target's doc comment).
Config seeds are the repository's own config files."""

import pathlib
import struct
import sys

HERE = pathlib.Path(__file__).resolve().parent
SAMPLES = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "../../../shared/samples"
REPO = HERE / "../.."

# Index into rtp_proxy::contracts::NPO_CONTRACTS of each response sample's contract.
RESPONSE_CONTRACT = {
    "06": 0, "07": 11, "08": 1, "09": 1, "10": 2, "11": 3,
    "12": 6, "13": 9, "14": 8, "15": 4,
}
ENVELOPE = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>',
            b"</s:Body></s:Envelope>")


def write(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    for path in sorted(SAMPLES.glob("*.xml")):
        number, body = path.name[:2], path.read_bytes()
        stem = path.stem
        write("fault", stem, body)
        if number in RESPONSE_CONTRACT:
            if b"Envelope" not in body:
                # Some samples are the Body content alone.
                body = ENVELOPE[0] + body + ENVELOPE[1]
            contract = RESPONSE_CONTRACT[number]
            write("scan_document", stem, bytes([contract]) + body)
            write("chunked_parse", stem, bytes([contract, 0]) + body)
            # Three cuts spread over the body; and the same cutting at every chance.
            cuts = [len(body) // 4, len(body) // 2, 3 * len(body) // 4]
            header = b"".join(struct.pack("<H", c % 65536) for c in cuts)
            write("chunked_parse", stem + "-cut", bytes([contract, 3]) + header + body)
            write("chunked_parse", stem + "-cut-always", bytes([contract, 0x83]) + header + body)
        else:
            write("inspect", stem, body)
            dates = b"2020010120241231"
            write("edit", stem, b"\x03" + dates + body)
            write("edit", stem + "-start", b"\x01" + dates + body)
    for path in sorted(REPO.glob("config/*.toml")) + sorted(REPO.glob("examples/*/rtp-proxy*.toml")):
        write("config", path.parent.name + "-" + path.name, path.read_bytes())


if __name__ == "__main__":
    main()
