"""Evaluating verifiers, one module per stage:

    config.py   EvalConfig (configs/eval/*.yaml) and its checks (no Ray, no model)
    pools.py    the policy's solution pools and one scoring pass per verifier (Ray Data + vLLM)
    metrics.py  Best-of-N, pass@N, self-consistency, AUROC, CIs: numbers from scores alone
    report.py   Markdown tables, plots, per-solution scores
    heldout.py  a trained verifier's accuracy / AUROC on held-out pairs (the training job)
    run.py      run_evaluation: the whole Best-of-N evaluation (jobs/eval_best_of_n.py, train_genrm.py)
"""
