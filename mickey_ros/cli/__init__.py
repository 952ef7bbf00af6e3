"""Command-line front-ends (thin argparse wrappers around library ``main`` functions)."""
