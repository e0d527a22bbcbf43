"""ecomine: a declarative model-serving platform on Ray for e-commerce demand mining.

Data flows one way: data -> models -> train -> tuning -> registry -> serve -> client.
Importing the package does no work: no Ray, no torch, no folders, no network.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
