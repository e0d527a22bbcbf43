"""`ecomine ensemble build`: members (versions, tags, a campaign) -> weights fitted on validation -> a
registered ensemble version. Sits above `predict` (whose combination maths it fits) and the registry.
"""
