# Put on PYTHONPATH by a test to make `import cv2` fail in a job, as on a node without opencv.
raise ImportError("No module named 'cv2' (hidden by rl-orchestrator's test)")
