"""A training script written for HPE Swarm Learning, as HPE's MNIST example is laid out.

It is kept exactly as an HPE user has it, HPE import included; it cannot run
as it stands. tests/integration/test_hpe_port.py changes that one import to
``swarm_keras`` and runs the result at several sites with unequal epochs.
Settings come from the environment, as HPE's run scripts pass them
(``--ml-e MAX_EPOCHS=...``): DATA_DIR holds ``mnist.npz``, the model is
saved to SCRATCH_DIR.
"""

import logging
import os

import numpy as np
import tensorflow as tf
from swarmlearning.tf import SwarmCallback

default_max_epochs = 5
default_min_peers = 2
batch_size = 32


def load_data(data_dir):
    """Loads the MNIST arrays from DATA_DIR/mnist.npz."""
    with np.load(os.path.join(data_dir, "mnist.npz"), allow_pickle=True) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def main():
    data_dir = os.getenv("DATA_DIR", "/platform/data")
    scratch_dir = os.getenv("SCRATCH_DIR", "/platform/scratch")
    max_epochs = int(os.getenv("MAX_EPOCHS", str(default_max_epochs)))
    min_peers = int(os.getenv("MIN_PEERS", str(default_min_peers)))
    sync_frequency = int(os.getenv("SYNC_FREQUENCY", "128"))
    os.makedirs(scratch_dir, exist_ok=True)
    model_name = "mnist_tf"

    (x_train, y_train), (x_test, y_test) = load_data(data_dir)
    x_train, x_test = x_train / 255.0, x_test / 255.0

    model = tf.keras.models.Sequential(
        [
            tf.keras.layers.Input(shape=x_train.shape[1:]),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(64, activation="relu"),
            tf.keras.layers.Dropout(0.2),
            tf.keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    # Create Swarm callback
    swarm_callback = SwarmCallback(
        syncFrequency=sync_frequency,
        minPeers=min_peers,
        useAdaptiveSync=False,
        adsValData=(x_test, y_test),
        adsValBatchSize=batch_size,
        mlPlatform="KERAS",
        totalEpochs=max_epochs,
        lossFunction="CrossEntropyLoss",
        metricFunction="Accuracy",
    )
    swarm_callback.logger.setLevel(logging.DEBUG)

    model.fit(x_train, y_train, batch_size=batch_size, epochs=max_epochs, verbose=2, callbacks=[swarm_callback])

    swarm_callback.logger.info("Saving the final Swarm model ...")
    model_path = os.path.join(scratch_dir, model_name + ".keras")
    model.save(model_path)
    swarm_callback.logger.info(f"Saved the trained model - {model_path}")

    swarm_callback.logger.info("Starting inference on the test data ...")
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    swarm_callback.logger.info("Test loss = %.5f" % (loss))
    swarm_callback.logger.info("Test accuracy = %.5f" % (acc))


if __name__ == "__main__":
    main()
