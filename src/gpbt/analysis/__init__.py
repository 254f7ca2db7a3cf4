"""What happens to an experiment folder after (or beside) its run: the report and its pages,
lineage, export of the best member, retraining it, and replaying the scheduler's decisions."""
