"""The synthetic world: an offline stand-in for real data and models.

- `scenes.py`: the visual vocabulary (scenes, objects, expressions, actions per emotion) and scene sampling;
- `renderer.py`: drawing a scene (registries: scene or object name -> drawing function);
- `dataset.py`: the world written in the EmoSet-118K layout, and its neutral corpus;
- `pocket.py`: the pocket CLIP and pocket Stable Diffusion trained on the neutral corpus;
- `judges.py`: independent evaluators (emotion, scene, object, features) for the world;
- `oracle.py`: the MLLM stand-in that captions from each image's true scene;
- `narrative.py`, `narrative_draw.py`, `narrative_probe.py`: the narrative world (`--content narrative`:
  emotions carried by a relation between a person and an entity), its drawing, and the probe of how much
  of the emotion its attribute bag carries against the relation (docs/world-narrative.md);
- `assets/`: the shipped pocket models, judges and trained run.
"""
