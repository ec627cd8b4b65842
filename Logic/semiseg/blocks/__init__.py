"""The methods' building blocks, each written once: weak and strong perturbations, pseudo-labels and
teachers, the unsupervised weight schedule, the losses, SemSim's affinity and prototypes, and the
reference bank of reference-guided pseudo-labels."""
