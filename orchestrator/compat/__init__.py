"""Drop-in names for code written for Amazon SageMaker RL (`orchestrator.compat.sagemaker`) and Azure ML's
retired reinforcement-learning preview (`orchestrator.compat.azureml`): such code runs here with only its import
lines changed, and what cannot carry over is one clear error naming what to use instead."""
