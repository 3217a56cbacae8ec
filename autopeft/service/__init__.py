"""Studies on a shared Ray cluster, through Ray's own job service (no server of autopeft's):
``submit`` a study as a Ray job, list the studies (``study_jobs``), follow, cancel and resume
them. :mod:`~autopeft.service.connection` finds the service and its token,
:mod:`~autopeft.service.staging` packs what travels, :mod:`~autopeft.service.jobs` talks to
the service, :mod:`~autopeft.service.figures` reads a study's figures from MLflow."""

from autopeft.service.connection import Cluster, connect
from autopeft.service.figures import StudyFigures, experiment_url, study_figures
from autopeft.service.jobs import StudyJob, find_job, study_jobs, submit_resume, submit_study

__all__ = ["Cluster", "StudyFigures", "StudyJob", "connect", "experiment_url", "find_job", "study_figures",
           "study_jobs", "submit_resume", "submit_study"]
