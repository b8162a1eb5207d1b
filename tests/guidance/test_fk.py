"""FK steering: one particle is plain sampling; resampling stays within an image's particles; steering raises
the reward; the scheduler's multistep history follows the particles."""

from __future__ import annotations

import types

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, StableDiffusionPipeline

from scenegraph_diff.graph.scene_graph import SceneGraph
from scenegraph_diff.guidance.fk import (FKConfig, FKSteering, checker_reward, fk_generate, particle_generators,
                                         stochastic_scheduler)
from scenegraph_diff.pipelines.testing import tiny_sd_components
from scenegraph_diff.shapes.world import render, sample_scene

GRAPHS = [SceneGraph.from_dict({"text": "a red circle above a blue square",
                                "objects": [{"name": "circle", "attributes": ["red"]},
                                            {"name": "square", "attributes": ["blue"]}],
                                "relations": [{"subject": 0, "predicate": "above", "object": 1}]}),
          SceneGraph.from_dict({"text": "a cat on a mat", "objects": [{"name": "cat"}, {"name": "mat"}],
                                "relations": [{"subject": 0, "predicate": "on", "object": 1}]})]


@pytest.fixture(scope="module")
def pipe():
    p = StableDiffusionPipeline(**tiny_sd_components(seed=0))
    p.set_progress_bar_config(disable=True)
    return p


def brightness(images, graphs):
    return images.mean(dim=(1, 2, 3))


def test_one_particle_is_plain_sampling(pipe):
    seeds = [3, 4]
    plain = pipe([g.text for g in GRAPHS], generator=[torch.Generator().manual_seed(s) for s in seeds],
                 num_inference_steps=4, eta=1.0, output_type="np").images
    out = fk_generate(pipe, GRAPHS, brightness, FKConfig(num_particles=1, resample_every=1),
                      particle_generators(seeds, 1), num_inference_steps=4, eta=1.0)
    assert all((a == b).all() for a, b in zip(out.images, plain))
    assert out.history == [] and torch.isnan(out.rewards).all()


def test_steering_raises_the_reward_and_is_deterministic(pipe):
    seeds = [3, 4]
    one = fk_generate(pipe, GRAPHS, brightness, FKConfig(num_particles=1), particle_generators(seeds, 1),
                      num_inference_steps=4, eta=1.0)
    config = FKConfig(num_particles=4, resample_every=1, temperature=50.0)
    runs = [fk_generate(pipe, GRAPHS, brightness, config, particle_generators(seeds, 4), num_inference_steps=4,
                        eta=1.0) for _ in range(2)]
    steered = runs[0]
    assert [s for s, _, _ in steered.history] == [0, 1, 2]  # never after the last step
    assert torch.equal(runs[0].rewards, runs[1].rewards)
    assert all((a == b).all() for a, b in zip(runs[0].images, runs[1].images))
    mean_one = sum(float(im.mean()) for im in one.images) / 2
    assert float(steered.rewards.mean()) > mean_one
    assert torch.equal(steered.rewards, steered.particle_rewards.max(1).values)


def test_resampling_stays_within_each_images_particles(pipe):
    fk = FKSteering(pipe, brightness, [GRAPHS[0]] * 12, FKConfig(num_particles=4, temperature=1.0))
    for seed in range(5):
        logp = torch.randn(12, generator=torch.Generator().manual_seed(seed)) * 3
        ancestors = fk.resample(logp)
        assert ((ancestors // 4) == torch.arange(12) // 4).all()
    peaked = torch.zeros(12)
    peaked[[2, 5, 11]] = 1000.0
    assert fk.resample(peaked).tolist() == [2] * 4 + [5] * 4 + [11] * 4


@pytest.mark.parametrize("potential, expected", [("difference", [1.0, -0.5]), ("max", [1.0, 1.0]),
                                                 ("sum", [1.0, 1.5])])
def test_potentials(pipe, potential, expected):
    fk = FKSteering(pipe, brightness, [GRAPHS[0]], FKConfig(num_particles=1, potential=potential, temperature=1.0))
    got = [float(fk.potentials(torch.tensor([r]))[0]) for r in (1.0, 0.5)]
    assert got == pytest.approx(expected)


def test_the_scheduler_history_follows_the_particles(pipe):
    fk = FKSteering(pipe, brightness, [GRAPHS[0]] * 2, FKConfig(num_particles=2))
    shape = torch.Size([2, 4, 2, 2])
    a, b = torch.zeros(shape), torch.ones(shape)
    b[1] = 2.0
    scheduler = types.SimpleNamespace(model_outputs=[None, a.clone(), b.clone()], timesteps=torch.arange(2),
                                      sample=b.clone())
    fk.pipe = types.SimpleNamespace(scheduler=scheduler)
    fk._reindex_scheduler(torch.tensor([1, 1]), shape)
    assert scheduler.model_outputs[0] is None and (scheduler.model_outputs[2] == 2.0).all()
    assert (scheduler.sample == 2.0).all() and torch.equal(scheduler.timesteps, torch.arange(2))


def test_resampling_under_a_multistep_sde_scheduler(pipe):
    scheduler, extra = stochastic_scheduler(DPMSolverMultistepScheduler.from_config(pipe.scheduler.config))
    assert scheduler.config.algorithm_type == "sde-dpmsolver++" and extra == {}
    p = StableDiffusionPipeline.from_pipe(pipe, scheduler=scheduler)
    p.set_progress_bar_config(disable=True)
    out = fk_generate(p, GRAPHS[:1], brightness, FKConfig(num_particles=3, resample_every=1, temperature=50.0),
                      particle_generators([7], 3), num_inference_steps=3)
    assert len(out.images) == 1 and out.particle_rewards.shape == (1, 3)


def test_stochastic_scheduler_and_bad_settings(pipe):
    assert stochastic_scheduler(pipe.scheduler) == (pipe.scheduler, {"eta": 1.0})  # DDIM
    with pytest.raises(ValueError, match="EulerDiscreteScheduler"):
        stochastic_scheduler(EulerDiscreteScheduler.from_config(pipe.scheduler.config))
    with pytest.raises(ValueError, match="num_particles must be an integer >= 1, got 0"):
        FKConfig(num_particles=0)
    with pytest.raises(ValueError, match="potential must be one of max, difference, sum; got 'min'"):
        FKConfig(potential="min")
    with pytest.raises(ValueError, match="3 graphs is not a multiple of num_particles=2"):
        FKSteering(pipe, brightness, [GRAPHS[0]] * 3, FKConfig(num_particles=2))
    assert FKConfig(resample_every=2).resample_steps(6) == [1, 3]


def test_checker_reward_scores_objects_and_relations():
    g = sample_scene(torch.Generator().manual_seed(0), num_objects=2, num_relations=1)
    image = torch.from_numpy(render(g, torch.Generator().manual_seed(1))).permute(2, 0, 1)[None].float() / 255
    assert checker_reward(image, [g]).tolist() == [1.0]
    assert checker_reward(image, [g.swapped()]).tolist() == [pytest.approx(2 / 3)]
