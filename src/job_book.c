/* placeholder: job_book */
