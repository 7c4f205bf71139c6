from ray.tune.registry import register_env

from orchestrator.compat.sagemaker import SageMakerRayLauncher


class MyLauncher(SageMakerRayLauncher):
    def register_env_creator(self):
        from news_vendor_env import NewsVendorEnv

        register_env("NewsVendorGymEnvironment-v1", lambda env_config: NewsVendorEnv(env_config))

    def get_experiment_config(self):
        return {
            "training": {
                "env": "NewsVendorGymEnvironment-v1",
                "run": "PPO",
                "stop": {"training_iteration": 20},
                "config": {
                    "gamma": 1,
                    "lr": 0.0001,
                    "num_sgd_iter": 5,
                    "sgd_minibatch_size": 1000,
                    "train_batch_size": 32000,
                    "num_workers": (self.num_cpus - 1),
                    "num_gpus": self.num_gpus,
                    "batch_mode": "complete_episodes",
                    "env_config": {"max_steps": 10},
                },
            }
        }


if __name__ == "__main__":
    MyLauncher().train_main()
