"""Flow matching (tracegen_ros.flow): interpolant, velocity target, loss, ODE sampling."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tracegen_ros.flow import (  # noqa: E402
    data_to_velocity,
    flow_matching_loss,
    guided,
    integrate,
    interpolant,
    sample_tau,
    velocity_target,
)


def test_interpolant_endpoints_and_midpoint() -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 5, generator=g)
    x1 = torch.randn(3, 4, 5, generator=g)
    tau = torch.tensor([0.0, 0.25, 1.0])
    xt = interpolant(x0, x1, tau)
    assert torch.allclose(xt[0], x0[0])
    assert torch.allclose(xt[1], 0.75 * x0[1] + 0.25 * x1[1])
    assert torch.allclose(xt[2], x1[2])


def test_velocity_target_is_time_derivative_of_interpolant() -> None:
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(2, 7, generator=g), torch.randn(2, 7, generator=g)
    tau, eps = torch.tensor([0.3, 0.6]), 1e-3
    fd = (interpolant(x0, x1, tau + eps) - interpolant(x0, x1, tau - eps)) / (2 * eps)
    assert torch.allclose(velocity_target(x0, x1), x1 - x0)
    assert torch.allclose(fd, velocity_target(x0, x1), atol=1e-4)


def test_loss_is_masked_mse_of_velocity() -> None:
    x0 = torch.zeros(1, 2, 2)
    x1 = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    pred = torch.zeros(1, 2, 2)
    assert flow_matching_loss(pred, x0, x1).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    mask = torch.tensor([[[True, False], [False, True]]])
    assert flow_matching_loss(pred, x0, x1, mask).item() == pytest.approx((1 + 16) / 2)
    assert flow_matching_loss(x1 - x0, x0, x1, mask).item() == 0.0


def test_tau_sampling_in_unit_interval() -> None:
    g = torch.Generator().manual_seed(2)
    for kind in ("uniform", "logit_normal"):
        t = sample_tau(1000, g, kind)
        assert t.shape == (1000,) and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
        assert 0.4 < float(t.mean()) < 0.6
    with pytest.raises(ValueError, match="unknown tau"):
        sample_tau(3, g, "beta")


def test_point_mass_is_recovered_exactly_with_the_exact_velocity() -> None:
    """For X1 = mu the flow's velocity is (mu - x) / (1 - tau); Euler lands on mu."""
    mu = torch.tensor([[1.5, -2.0, 0.25]])

    def v(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return (mu - x) / (1.0 - tau[:, None])

    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(3))
    for steps in (1, 10, 100):
        x1 = integrate(v, x0, steps, "euler")
        assert torch.allclose(x1, mu.expand_as(x1), atol=1e-5)


def test_gaussian_target_transported_by_euler_and_heun() -> None:
    """Data N(m, s^2): the exact marginal velocity moves N(0, 1) onto it."""
    m, s = 2.0, 0.5

    def v(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        t = tau[:, None]
        var = (1 - t) ** 2 + (t * s) ** 2
        e1 = m + t * s * s * (x - t * m) / var
        e0 = (1 - t) * (x - t * m) / var
        return e1 - e0

    x0 = torch.randn(20000, 1, generator=torch.Generator().manual_seed(4))
    for method, steps in (("euler", 100), ("heun", 20)):
        x1 = integrate(v, x0, steps, method)
        assert float(x1.mean()) == pytest.approx(m, abs=0.03)
        assert float(x1.std()) == pytest.approx(s, abs=0.03)
    with pytest.raises(ValueError, match="steps"):
        integrate(v, x0, 0)


def test_learned_velocity_recovers_point_mass() -> None:
    """Train a tiny net with the flow-matching loss on a point mass, then sample."""
    torch.manual_seed(0)
    mu = torch.tensor([0.8, -1.2])
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64),
                              torch.nn.SiLU(), torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(5)

    def v(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = net(torch.cat([x, tau[:, None]], dim=1))
        return out

    for _ in range(1500):
        x0 = torch.randn(256, 2, generator=g)
        x1 = mu.expand(256, 2)
        tau = sample_tau(256, g) * 0.98  # the exact field is singular at tau = 1
        loss = flow_matching_loss(v(interpolant(x0, x1, tau), tau), x0, x1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    samples = integrate(v, torch.randn(500, 2, generator=g), 100)
    assert torch.allclose(samples.mean(0), mu, atol=0.05)
    assert float(samples.std(0).max()) < 0.1


def test_classifier_free_guidance_combination() -> None:
    vc, vu = torch.tensor([2.0]), torch.tensor([1.0])
    assert guided(vc, vu, 1.0).item() == 2.0
    assert guided(vc, vu, 0.0).item() == 1.0
    assert guided(vc, vu, 2.0).item() == 3.0


def test_data_parametrisation_target_is_the_velocity() -> None:
    """(x1 - x_tau) / (1 - tau) == x1 - x0; with t_eps the clamp only acts above 1 - t_eps."""
    g = torch.Generator().manual_seed(6)
    x0, x1 = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    tau = torch.tensor([0.0, 0.5, 0.94, 0.99])
    xt = interpolant(x0, x1, tau)
    v = data_to_velocity(x1, xt, tau, t_eps=0.05)
    assert torch.allclose(v[:3], (x1 - x0)[:3], atol=1e-5)
    assert torch.allclose(v[3], (x1[3] - xt[3]) / 0.05)
    # an exact data estimate makes Euler land on it from any start
    mu = torch.tensor([[0.3, -0.7, 1.1, 0.0, 2.0]])
    out = integrate(lambda x, t: data_to_velocity(mu.expand_as(x), x, t), torch.randn(8, 5), 100)
    assert torch.allclose(out, mu.expand(8, 5), atol=1e-5)
