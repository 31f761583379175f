"""The HTML report of a tokenizer comparison: plots (``plots``), the SID trie (``trie``), the page (``html``).

The page is one self-contained file: styles inline, plots as base64 PNG, no script or font from
elsewhere, so it opens offline and can be mailed or archived as is.
"""
