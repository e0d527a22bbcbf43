"""`ecomine demo`: the whole platform on the embedded synthetic log, as named stages (`run`),
and the served part of it (`serve`). An operator on top; nothing below imports it.
"""
