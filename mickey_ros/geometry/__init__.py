"""Pure-torch batched geometry: poses, cameras, Kabsch, RANSAC and pose metrics."""
