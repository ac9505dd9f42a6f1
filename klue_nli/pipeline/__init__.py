"""How the pipeline is run: named recipes (`make demo/quick/run`), the DVC experiment sweep
(`make sweep`), and the Prefect training flow with its weekly deployment."""
