"""The names a user can choose on the command line, importable without torch (for `--help` and checks)."""

ARCHS = ("resnet50", "resnet18", "densenet121")
POOLS = ("lse", "max", "avg")
LOSSES = ("weighted", "bce")
UNCERTAIN_POLICIES = ("ignore", "ones", "zeros")
HEATMAPS = ("cam", "gradcam", "layercam", "saliency-gradcam")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("onecycle", "cosine", "plateau", "constant")
AUGMENTATIONS = ("affine", "flip", "affine+flip", "none")
MAX_PIXELS = 25_000_000  # pixels of the largest image a worker decodes: a 5,000 x 5,000 film (images.py)
