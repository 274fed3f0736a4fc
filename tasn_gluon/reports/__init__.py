"""What is made from trained runs: the comparison with the published numbers (``compare``), the
attention pictures (``visualize``), the sampler's zoom on the synthetic set (``zoom``) and the
demo (``demo``). Above the engine; ``tools/`` calls them."""
