"""videoclf: cached video features, tracked KerasTuner searches, registered models."""

import os

__version__ = "0.1.0"

# FFmpeg's own lines ("[mjpeg @ 0x…] overread 8") would reach the console from inside OpenCV's decoder; a video
# that cannot be decoded is reported by videoclf itself (bad_videos.csv, a row's error). OpenCV reads this once,
# when it first opens a video, so it is set on import; set it yourself (e.g. 24, warnings) to see FFmpeg's lines.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
