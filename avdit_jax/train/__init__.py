"""The one training system: trainees, trainer loop, checkpoints, sharding, and ahead-of-time compilation.
Imports factory and the layers below it."""
