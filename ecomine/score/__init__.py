"""`ecomine score`: a registered version or ensemble over a table, as Ray Data batches through the
`predict` layer, written as parquet to a folder or `s3://` (`batch`).
"""
