"""The HTTP contract of a served app (`/v1`): request and response models, shared by
`predict` (which answers them), `serve` (which validates and routes them) and the
client SDK (which builds them). Only pydantic: no Ray, no torch, so the client installs light.
"""
