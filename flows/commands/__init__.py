"""The `tava` commands, one module per flow module.

A command parses its options, builds the validated config and checks its inputs (``checks``)
without importing Prefect or starting a server, so a bad path or file is reported at once; only
then does ``flows._server.run_flow`` import the flow and run it against a Prefect API that dies
with this process. Keep Prefect imports out of these modules (a test holds them to it).
"""
