"""reprolib: the library behind the companion to Zhang et al., "The Emergence of Reproducibility and
Generalizability in Diffusion Models" (ICML 2024).

Data flows one way: profiles -> data -> networks + formulations (a denoiser D(x, sigma)) -> train
(store) -> samplers -> metrics -> plotting. Every model, trained or closed-form, is a D(x, sigma).
"""

__version__ = "0.1.0"
