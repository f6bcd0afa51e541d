"""Training on Ray: the teacher (Ray Train), its outputs computed once (Ray Data), confidence distillation and
its baselines (Ray Train), and the λ/μ/τ/learning-rate search (Ray Tune). See DESIGN.md, "How data flows"."""
