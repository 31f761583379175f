"""Diagnostics of Semantic IDs: how they use their codes, how well they reconstruct, and why they fail.

One module per question: ``usage`` (active and dead codes, perplexity, Gini, collisions),
``reconstruction`` (MSE, relative error, cosine), ``overlap`` (O_pi, K_eff, distribution and geometry
penalties), ``retrieval`` (hit-rate retention, SID-embedding AUC), ``hierarchy`` (prefix cosine
table), ``stability`` (agreement between two fitted tokenizers), and ``basic`` (usage and
reconstruction streamed in chunks). Import from the module itself, e.g.
``from sidkit.diagnostics.usage import usage_report``.
"""
