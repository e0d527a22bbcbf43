"""`ecomine demo`: the whole platform on the embedded synthetic log: `run` runs the named stages of
`stages` in order; `serve` is the served part, `plots` the pictures. An operator on top; nothing below imports it.
"""
