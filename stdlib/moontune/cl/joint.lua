-- joint: the upper bound. Training on task i also trains on every task before it (Avalanche's
-- cumulative strategy): each step adds a batch of one earlier task, in turn, to the current one,
-- so that nothing seen is left to be forgotten.
return {
  name = "joint",
  loss = function(s, task, batch)
    local loss = s.learner:loss(task.name, batch)
    local earlier = #s.seen
    if earlier == 0 then return loss end
    s.joint_turn = (s.joint_turn or 0) % earlier + 1
    local past = s.seen[s.joint_turn]
    return loss + s.learner:loss(past.name, s.next_batch(past))
  end,
}
