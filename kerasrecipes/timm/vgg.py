"""Not converted yet: no timm architecture loads into this family."""

ARCHITECTURES = {}
UNSUPPORTED = {}
