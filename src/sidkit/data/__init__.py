"""Item catalogs, interactions, dataset directories, and the sources that fill them."""
