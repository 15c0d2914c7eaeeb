"""Wire formats: base45 (RFC 9285), strict CBOR, COSE_Sign1 (RFC 9052), the SC1 code
profile and QR rendering. Pure and synchronous: no I/O, no clock."""
