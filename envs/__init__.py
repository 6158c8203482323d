"""envs: BrowserGym MiniWoB++ / WorkArena and a fast text toy env behind one episode protocol.

Never imports `trainers`. BrowserGym and playwright are imported lazily.
"""

__all__: list[str] = []
