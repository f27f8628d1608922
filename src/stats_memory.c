/* placeholder: stats_memory */
