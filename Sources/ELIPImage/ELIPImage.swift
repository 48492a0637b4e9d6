// ELIPImage: RGB images, JPEG/PNG codecs, Pillow-exact resize, and the training image transforms.

