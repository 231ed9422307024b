"""The synthetic world: an offline stand-in for real data and models.

- `scenes.py`: the visual vocabulary (scenes, objects, expressions, actions per emotion) and scene sampling;
- `renderer.py`: drawing a scene (registries: scene or object name -> drawing function);
- `dataset.py`: the world written in the EmoSet-118K layout, and its neutral corpus;
- `pocket.py`: the pocket CLIP and pocket Stable Diffusion trained on the neutral corpus;
- `judges.py`: independent evaluators (emotion, scene, object, features) for the world;
- `oracle.py`: the MLLM stand-in that captions from each image's true scene;
- `assets/`: the shipped pocket models, judges and trained run.
"""
