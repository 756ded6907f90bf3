"""Console scripts of discovery-nova.

tooz and oslo libraries import eventlet, which warns at import time that it
is deprecated; our console scripts do not use eventlet, so that warning is
noise on an operator's terminal and is silenced here, before any import.
"""

import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
