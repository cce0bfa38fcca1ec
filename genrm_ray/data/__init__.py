"""The verifier's data, in the order it is made: policy samples (``sampling``: Ray Data + vLLM),
teacher rationales (``synthesis``), the SFT sets D_verify / D_cot / D_correct and their JSONL schema
(``sft``), and the training job's cached build of all of it (``build``)."""
