"""discovery-nova: many small Nova deployments cooperating as one cloud."""
