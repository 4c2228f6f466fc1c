"""Seed conformance: the published fusionkit-server 0.1.1's answers, recorded, and how ours are compared.

`standin` is the deterministic upstream both servers call; `scenarios` the requests both get;
`record` (run by `make seed-fixtures`, inside the seed's own venv) writes `fixtures/`;
`keypaths` compares an answer of ours with the seed's. Nothing here imports FusionKit, so the
recorder runs where only the seed is installed.
"""
