-- naive: sequential fine-tuning, task after task, with nothing against forgetting — the lower
-- bound every other strategy is measured against. Each step is the current task's batch.
return {
  name = "naive",
  loss = function(s, task, batch)
    return s.learner:loss(task.name, batch)
  end,
}
