-- Argo CD health of a labelops.dev/LabelingCampaign.
--
-- The operator reports kstatus conditions (Ready, Reconciling, Stalled) and
-- status.observedGeneration, so Argo CD reads the same signals Flux and kstatus read:
--   Progressing  the operator has not acted on the latest spec yet, or is still working
--   Degraded     Stalled=True: a permanent problem only a human can fix (the message says which)
--   Healthy      the campaign Completed, or Ready=True for the latest generation
--   Suspended    spec.paused, once the operator has observed it
-- The generation check comes first, as in kstatus: after a spec edit, old verdicts (even
-- Stalled) describe a spec that no longer exists.
-- Argo CD opens only Lua's base and table libraries for health checks: no string.* here.

local function find_condition(conditions, wanted)
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function explain(c, fallback)
  if c == nil or c.message == nil or c.message == "" then
    return fallback
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.message
end

local function verdict(status, message)
  return { status = status, message = message }
end

if obj.metadata.deletionTimestamp ~= nil then
  return verdict("Progressing", "Campaign is being deleted")
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  return verdict("Progressing", "Waiting for the operator to pick up the campaign")
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration < generation then
  return verdict("Progressing", "Waiting for the operator to observe generation " .. generation
    .. " (observed " .. status.observedGeneration .. ")")
end

local conditions = status.conditions or {}
local stalled = find_condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  return verdict("Degraded", explain(stalled, "Stalled"))
end

if status.phase == "Completed" then
  return verdict("Healthy", explain(find_condition(conditions, "TargetMet"), "Campaign completed"))
end

if status.phase == "Paused" or (obj.spec ~= nil and obj.spec.paused == true) then
  return verdict("Suspended", "Campaign is paused: workers scaled to zero, no new claims")
end

local reconciling = find_condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return verdict("Progressing", explain(reconciling, "Reconciling"))
end

local ready = find_condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  return verdict("Healthy", explain(ready, "Campaign is ready"))
end
return verdict("Progressing", explain(ready, "Waiting for the campaign to become Ready"))
