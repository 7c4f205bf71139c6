from ray.tune.registry import register_env

from orchestrator.compat.sagemaker import SageMakerRayLauncher


class MyLauncher(SageMakerRayLauncher):
    def register_env_creator(self):
        from battery_env import SimpleBattery

        register_env("SimpleBattery-v1", lambda env_config: SimpleBattery(env_config))

    def get_experiment_config(self):
        return {
            "training": {
                "env": "SimpleBattery-v1",
                "run": "DQN",
                "config": {
                    "framework": "torch",
                    "env_config": {
                        "MAX_STEPS_PER_EPISODE": 24,
                    },
                },
                "stop": {
                    "training_iteration": 5,
                },
            }
        }


if __name__ == "__main__":
    MyLauncher().train_main()
