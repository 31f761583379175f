"""Diagnostics of Semantic IDs: how they use their codes, how well they reconstruct, and why they fail.

One module per question: ``usage`` (active and dead codes, perplexity, Gini, collisions),
``reconstruction`` (MSE, relative error, cosine), and the others listed in DESIGN.md. Import from the
module itself, e.g. ``from sidkit.diagnostics.usage import usage_report``.
"""
