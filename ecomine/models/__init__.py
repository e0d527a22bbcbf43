"""Models: the networks and the servable models of each task.

Sits after `data`, before `train`. Names say which is which: an ``XNet`` is the
``nn.Module`` a run trains (`demand.DemandNet`, `risk.RiskNet`), an ``XModel`` the
servable that loads a version folder and answers (`demand.DemandModel`,
`risk.OrderRiskModel`, the LightGBM ones). The item models
(`recommend.SequentialRecommender`, `recommend_bert.MaskedItemRecommender`) are
both at once: the module's own `score(histories)` is what serving calls.
"""
