/* placeholder: mq_memory */
