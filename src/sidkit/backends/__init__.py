"""Engines that run sidkit's per-chunk work on more than one machine (optional extras).

- :mod:`sidkit.backends.ray_backend`: encode and diagnose with Ray Data (``pip install 'sidkit[ray]'``).
"""
