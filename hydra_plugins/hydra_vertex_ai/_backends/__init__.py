"""Backends run CustomJob specs (REST-shaped dicts) and report how each ended.

Kept free of imports: pkgutil imports this package during Hydra's plugin scan.
"""
