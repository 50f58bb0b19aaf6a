"""Everything that makes the student: data (synthetic world, LiDAR simulation, loaders), networks,
teachers, losses, training and export. Imports core only (never runtime or ros)."""
