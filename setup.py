"""nasseg_tf: neural architecture search for dense prediction in Keras 3 / TensorFlow 2."""

import setuptools

INSTALL_REQUIRES = [
    "tensorflow>=2.20,<2.22",
    "keras>=3.12,<4",
    "keras-tuner>=1.4,<1.5",
    "gin-config>=0.5",
    "absl-py>=2.0",
    "tensorboard>=2.20",
    "numpy>=1.26",
    "pillow>=10.0",
    "matplotlib>=3.8",
]

EXTRAS_REQUIRE = {
    # jax lets the tests run the zoo on Keras' JAX backend and compare with TF.
    "test": ["pytest>=8", "pytest-xdist>=3.5", "jax>=0.4.30"],
    "jax": ["jax>=0.4.30"],
}

setuptools.setup(
    name="nasseg_tf",
    version="0.1.0",
    description=(
        "Auto-DeepLab and Dense Prediction Cell: NAS for semantic segmentation "
        "in Keras 3 / TensorFlow 2 — search, retrain, evaluate, serve."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["nasseg_tf", "nasseg_tf.*"]),
    package_data={"nasseg_tf": ["search_space/published/*/*.json"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "nasseg-zoo=nasseg_tf.cli.zoo_tool:run",
            "nasseg-import-checkpoint=nasseg_tf.cli.import_checkpoint:run",
            "nasseg-export=nasseg_tf.cli.export:run",
            "nasseg-demo=nasseg_tf.cli.demo:run",
            "nasseg-build-data=nasseg_tf.cli.build_data:run",
            "nasseg-train=nasseg_tf.cli.train:run",
            "nasseg-eval=nasseg_tf.cli.eval:run",
            "nasseg-predict=nasseg_tf.cli.predict:run",
            "nasseg-search-autodeeplab=nasseg_tf.cli.search_autodeeplab:run",
            "nasseg-search-dpc=nasseg_tf.cli.search_dpc:run",
        ]
    },
)
